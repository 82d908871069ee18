"""From a frame to its Matte: the model files and their cache, one module per segmentation runtime, the
guided filter and the matte builder, and Matting, which runs them for one stream of frames."""
