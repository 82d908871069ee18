/*
 * A fake USB webcam for tests, LD_PRELOADed so OpenCV's real V4L2 capture backend reads from it: the
 * ioctls a UVC camera answers (QUERYCAP, S_FMT/G_FMT, S_PARM/G_PARM, REQBUFS, QUERYBUF, QBUF, DQBUF,
 * STREAMON/OFF), mmap of its buffers, and MJPG frames at the frame rate it grants.
 *
 * Environment:
 *   FAKE_CAM_DEVICE  the one path we answer for. It must exist (a plain file the test creates, the one
 *                    open we pass through): remove it and the camera is unplugged (open fails with ENOENT,
 *                    a stream in progress with ENODEV)
 *   FAKE_CAM_DIR     frame000.jpg, frame001.jpg, ... (all of the one size), sent in a loop; a file "busy"
 *                    there makes open() fail with EBUSY (the camera is in use by another app)
 *   FAKE_CAM_SIZE    "WIDTHxHEIGHT" of the frames: the only size granted, whatever is asked
 *   FAKE_CAM_FPS     the only frame rate granted
 * Only MJPG is offered, as many webcams do at 720p and 1080p. Every other path and fd goes to libc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFFERS 8
#define MAX_FRAMES 64

static int cam_fd = -1;
static int width, height, fps;
static size_t buf_len;
static unsigned n_buffers;
static int queued[MAX_BUFFERS];
static unsigned char *frames[MAX_FRAMES];
static size_t frame_len[MAX_FRAMES];
static int n_frames, next_frame;
static unsigned sequence;
static struct timespec next_due;
static void *mapped[MAX_BUFFERS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);

static void init(void) {
    if (!real_open) real_open = dlsym(RTLD_NEXT, "open");
    if (!real_ioctl) real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
    if (!real_mmap) real_mmap = dlsym(RTLD_NEXT, "mmap");
}

static int is_cam_path(const char *path) {
    const char *dev = getenv("FAKE_CAM_DEVICE");
    return dev && path && strcmp(path, dev) == 0;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int in_dir_exists(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", getenv("FAKE_CAM_DIR") ? getenv("FAKE_CAM_DIR") : "/tmp", name);
    return exists(p);
}

static void load_frames(void) {
    for (int i = 0; i < n_frames; i++) free(frames[i]);
    n_frames = 0;
    for (int i = 0; i < MAX_FRAMES; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/frame%03d.jpg", getenv("FAKE_CAM_DIR") ? getenv("FAKE_CAM_DIR") : "/tmp", i);
        FILE *f = fopen(p, "rb");
        if (!f) break;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        frames[i] = malloc(n);
        frame_len[i] = fread(frames[i], 1, n, f);
        fclose(f);
        n_frames = i + 1;
    }
}

static int open_common(const char *path, int flags, mode_t mode) {
    init();
    if (!is_cam_path(path) || (flags & O_CREAT)) return real_open(path, flags, mode); /* O_CREAT: plugging in */
    if (!exists(path)) {
        errno = ENOENT;
        return -1;
    }
    if (in_dir_exists("busy")) {
        errno = EBUSY;
        return -1;
    }
    /* the node itself: a real fd that select/poll see as ready, and that /proc/<pid>/fd shows as the camera */
    int fd = real_open(path, O_RDWR);
    if (fd >= 0) {
        pthread_mutex_lock(&lock);
        cam_fd = fd;
        if (!getenv("FAKE_CAM_SIZE") || sscanf(getenv("FAKE_CAM_SIZE"), "%dx%d", &width, &height) != 2) {
            width = 1280;
            height = 720;
        }
        fps = getenv("FAKE_CAM_FPS") ? atoi(getenv("FAKE_CAM_FPS")) : 30;
        buf_len = ((size_t)width * height * 2 + 4095) / 4096 * 4096;
        n_buffers = 0;
        next_frame = 0;
        sequence = 0;
        load_frames();
        pthread_mutex_unlock(&lock);
    }
    return fd;
}

#include "open_wrappers.h"

int close(int fd) {
    init();
    pthread_mutex_lock(&lock);
    if (fd >= 0 && fd == cam_fd) cam_fd = -1;
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
    init();
    if (fd < 0 || fd != cam_fd) return real_mmap(addr, len, prot, flags, fd, offset);
    unsigned index = (unsigned)(offset / (off_t)buf_len);
    if (index >= MAX_BUFFERS || len != buf_len) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    void *p = real_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) mapped[index] = p;
    return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
    return mmap(addr, len, prot, flags, fd, offset);
}

static void fill_format(struct v4l2_format *f) {
    f->fmt.pix.width = width;
    f->fmt.pix.height = height;
    f->fmt.pix.pixelformat = V4L2_PIX_FMT_MJPEG;
    f->fmt.pix.field = V4L2_FIELD_NONE;
    f->fmt.pix.bytesperline = 0;
    f->fmt.pix.sizeimage = buf_len;
    f->fmt.pix.colorspace = V4L2_COLORSPACE_SRGB;
}

static void wait_for_next_frame(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (next_due.tv_sec == 0 || now.tv_sec > next_due.tv_sec + 1) next_due = now;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next_due, NULL);
    next_due.tv_nsec += 1000000000L / (fps > 0 ? fps : 30);
    if (next_due.tv_nsec >= 1000000000L) {
        next_due.tv_sec += 1;
        next_due.tv_nsec -= 1000000000L;
    }
}

static int answer(unsigned long request, void *arg) {
    switch (request) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *cap = arg;
        memset(cap, 0, sizeof *cap);
        strcpy((char *)cap->driver, "uvcvideo");
        strcpy((char *)cap->card, "Fake Webcam");
        strcpy((char *)cap->bus_info, "usb-fake-1");
        cap->version = 0x060100;
        cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        cap->capabilities = cap->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *d = arg;
        if (d->index != 0) break;
        d->flags = V4L2_FMT_FLAG_COMPRESSED;
        strcpy((char *)d->description, "Motion-JPEG");
        d->pixelformat = V4L2_PIX_FMT_MJPEG;
        return 0;
    }
    case VIDIOC_G_FMT:
    case VIDIOC_S_FMT:
    case VIDIOC_TRY_FMT:
        fill_format(arg); /* whatever was asked: the camera grants MJPG at its one size */
        return 0;
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *p = arg;
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1;
        p->parm.capture.timeperframe.denominator = fps;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->memory != V4L2_MEMORY_MMAP) break;
        n_buffers = r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
        r->count = n_buffers;
        memset(queued, 0, sizeof queued);
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= n_buffers) break;
        b->length = buf_len;
        b->m.offset = b->index * buf_len;
        b->flags = queued[b->index] ? V4L2_BUF_FLAG_QUEUED : 0;
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= n_buffers) break;
        queued[b->index] = 1;
        return 0;
    }
    case VIDIOC_STREAMON:
    case VIDIOC_STREAMOFF:
        next_due.tv_sec = 0;
        return 0;
    }
    errno = EINVAL; /* controls, inputs, crop...: not offered */
    return -1;
}

static int dequeue(struct v4l2_buffer *b) {
    if (!exists(getenv("FAKE_CAM_DEVICE"))) { /* unplugged mid-stream */
        errno = ENODEV;
        return -1;
    }
    unsigned index = 0;
    while (index < n_buffers && !queued[index]) index++;
    if (index == n_buffers || n_frames == 0 || !mapped[index]) {
        errno = EINVAL;
        return -1;
    }
    wait_for_next_frame();
    int f = next_frame;
    next_frame = (next_frame + 1) % n_frames;
    size_t n = frame_len[f] < buf_len ? frame_len[f] : buf_len;
    memcpy(mapped[index], frames[f], n);
    queued[index] = 0;
    b->index = index;
    b->bytesused = n;
    b->length = buf_len;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE;
    b->field = V4L2_FIELD_NONE;
    b->sequence = sequence++;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    b->timestamp.tv_sec = now.tv_sec;
    b->timestamp.tv_usec = now.tv_nsec / 1000;
    return 0;
}

int ioctl(int fd, unsigned long request, ...) {
    init();
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fd < 0 || fd != cam_fd) return real_ioctl(fd, request, arg);
    if (request == VIDIOC_DQBUF) return dequeue(arg); /* waits for the frame time: not under the lock */
    pthread_mutex_lock(&lock);
    int r = answer(request, arg);
    pthread_mutex_unlock(&lock);
    return r;
}
