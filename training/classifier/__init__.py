"""Training of the 2.5-D slice PE classifier from image-level labels (``pe_present_on_image``)."""
