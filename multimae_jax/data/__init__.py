"""Caption datasets, image transforms, tokenizers and Grain input pipelines."""
