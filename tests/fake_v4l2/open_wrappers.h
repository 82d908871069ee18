/*
 * open() and open64() for an LD_PRELOAD shim: both take an optional mode (only with O_CREAT or
 * O_TMPFILE), which C can only read as varargs, and hand it to the including file's
 *     static int open_common(const char *path, int flags, mode_t mode);
 * Include this after open_common is defined.
 */
#define SHIM_DEFINE_OPEN(name)                                  \
    int name(const char *path, int flags, ...) {                \
        mode_t mode = 0;                                        \
        if (flags & (O_CREAT | O_TMPFILE)) {                    \
            va_list ap;                                         \
            va_start(ap, flags);                                \
            mode = va_arg(ap, mode_t);                          \
            va_end(ap);                                         \
        }                                                       \
        return open_common(path, flags, mode);                  \
    }

SHIM_DEFINE_OPEN(open)
SHIM_DEFINE_OPEN(open64)
