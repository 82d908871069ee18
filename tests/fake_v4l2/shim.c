/*
 * A fake v4l2loopback device for tests, LD_PRELOADed into `vcam run` so pyvirtualcam's real native
 * backend (which only calls open, ioctl, write and close: see `nm -D` of its .so) writes to it.
 *
 * Environment:
 *   FAKE_V4L2_DEVICE  the one path we answer for (it must exist: a plain file the tests create, so
 *                     inotify and /proc/<pid>/fd behave like with a device node)
 *   FAKE_V4L2_DIR     where we record: format (one line "width height fourcc" per VIDIOC_S_FMT),
 *                     frame.raw (the latest frame written), writes.log (one "<CLOCK_MONOTONIC ns> <bytes>"
 *                     line per write)
 *   FAKE_V4L2_ERRNO   optional: make open() of the device fail with this errno (e.g. 13 = EACCES)
 * A file named "stall" in FAKE_V4L2_DIR makes write() to the device block until it is removed (a wedged
 * driver or a full pipe), so tests can see what the daemon does when its output stops.
 * Every other path and fd goes straight to libc.
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
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int fake_fd = -1;
static int frame_fd = -1;
static int log_fd = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_close)(int);

static void init(void) {
    if (!real_open) real_open = dlsym(RTLD_NEXT, "open");
    if (!real_ioctl) real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    if (!real_write) real_write = dlsym(RTLD_NEXT, "write");
    if (!real_close) real_close = dlsym(RTLD_NEXT, "close");
}

static int is_fake_path(const char *path) {
    const char *dev = getenv("FAKE_V4L2_DEVICE");
    return dev && path && strcmp(path, dev) == 0;
}

static void record_path(char *out, size_t n, const char *name) {
    const char *dir = getenv("FAKE_V4L2_DIR");
    snprintf(out, n, "%s/%s", dir ? dir : "/tmp", name);
}

static int open_common(const char *path, int flags, mode_t mode) {
    init();
    if (!is_fake_path(path)) return real_open(path, flags, mode);
    const char *err = getenv("FAKE_V4L2_ERRNO");
    if (err && atoi(err) > 0) {
        errno = atoi(err);
        return -1;
    }
    int fd = real_open(path, flags & ~O_TRUNC, mode); /* ENOENT etc. come from the real file */
    if (fd >= 0) {
        char p[4096];
        pthread_mutex_lock(&lock);
        fake_fd = fd;
        record_path(p, sizeof p, "frame.raw");
        frame_fd = real_open(p, O_WRONLY | O_CREAT, 0644);
        record_path(p, sizeof p, "writes.log");
        log_fd = real_open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
        pthread_mutex_unlock(&lock);
    }
    return fd;
}

#include "open_wrappers.h"

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    init();
    if (fd < 0 || fd != fake_fd) return real_ioctl(fd, request, arg);
    if (request == VIDIOC_QUERYCAP) {
        struct v4l2_capability *cap = arg;
        memset(cap, 0, sizeof *cap);
        strcpy((char *)cap->driver, "v4l2 loopback");
        strcpy((char *)cap->card, "Virtual Camera");
        strcpy((char *)cap->bus_info, "platform:v4l2loopback-010");
        cap->capabilities = V4L2_CAP_VIDEO_OUTPUT | V4L2_CAP_STREAMING | V4L2_CAP_DEVICE_CAPS;
        cap->device_caps = V4L2_CAP_VIDEO_OUTPUT | V4L2_CAP_STREAMING;
        return 0;
    }
    if (request == VIDIOC_S_FMT) {
        struct v4l2_format *fmt = arg;
        struct v4l2_pix_format *pix = &fmt->fmt.pix;
        if (fmt->type != V4L2_BUF_TYPE_VIDEO_OUTPUT) {
            errno = EINVAL;
            return -1;
        }
        pix->bytesperline = pix->width;
        pix->sizeimage = pix->width * pix->height * 3 / 2;
        char p[4096], line[128];
        record_path(p, sizeof p, "format");
        int f = real_open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (f >= 0) {
            int n = snprintf(line, sizeof line, "%u %u %.4s\n", pix->width, pix->height,
                             (const char *)&pix->pixelformat);
            real_write(f, line, n);
            real_close(f);
        }
        return 0;
    }
    errno = EINVAL;
    return -1;
}

ssize_t write(int fd, const void *buf, size_t count) {
    init();
    if (fd < 0 || fd != fake_fd) return real_write(fd, buf, count);
    char stall[4096];
    record_path(stall, sizeof stall, "stall");
    while (access(stall, F_OK) == 0) usleep(10000);
    pthread_mutex_lock(&lock);
    if (frame_fd >= 0) pwrite(frame_fd, buf, count, 0);
    if (log_fd >= 0) {
        struct timespec ts;
        char line[64];
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int n = snprintf(line, sizeof line, "%lld %zu\n",
                         (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, count);
        real_write(log_fd, line, n);
    }
    pthread_mutex_unlock(&lock);
    return (ssize_t)count;
}

int close(int fd) {
    init();
    if (fd >= 0 && fd == fake_fd) {
        pthread_mutex_lock(&lock);
        fake_fd = -1;
        if (frame_fd >= 0) real_close(frame_fd);
        if (log_fd >= 0) real_close(log_fd);
        frame_fd = log_fd = -1;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}
