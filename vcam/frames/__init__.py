"""Frame formats, no threads and no policy: the I420 layout, MJPG and libturbojpeg decoding, the shared
reductions of a frame, and reading a picture's size from its header."""
