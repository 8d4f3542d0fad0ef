"""The training tasks (image MAE, text MLM, MMAE, fusion MAE): which components and losses each combines."""
