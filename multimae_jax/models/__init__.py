"""Image encoders, text encoders, fusion transformer, decoders and heads."""
