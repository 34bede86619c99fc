"""One image through one model: feature maps (hooks), Grad-CAM and input x gradient
(Captum), region shares, the randomisation sanity check."""
