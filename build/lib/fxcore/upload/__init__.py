"""A user's photo to a model input: decoding, face landmarks, alignment into CelebA's frame."""
