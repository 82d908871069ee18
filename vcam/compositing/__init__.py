"""From a frame and its Matte to the picture sent: the effect registry, backgrounds, the helpers both
compositors share, the BGR (files) and I420 (live) compositors, and the file-mode Engine."""
