"""Training objectives: MAE pixel loss, masked-language-model loss, contrastive loss."""
