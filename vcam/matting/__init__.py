"""From a frame to its Matte: the model files and their cache, one module per segmentation runtime, the
guided filter and the matte builder, Matting, which runs them for one stream of frames, and quality.py,
the extra model passes a still gets in file mode."""
