"""Object storage (local folder or any S3 API) and the Parquet files of market data in it."""
