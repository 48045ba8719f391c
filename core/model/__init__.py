"""The model: the networks (U-Net with context, ViT), their inputs, the model file and card, predictors, the aux prior and the metrics on hidden cells."""
