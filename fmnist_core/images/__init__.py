"""Images in: the data set, photo preprocessing, synthetic photos, photo augmentation."""
