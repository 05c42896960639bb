"""URL lists, WebDataset shards and folders -> staged images, with a status for every row."""
