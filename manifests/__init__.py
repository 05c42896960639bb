"""The column contract, Parquet and WebDataset I/O, and the run directory layout."""
