"""The offline demo data set: synthetic stocks written as DoltHub-shaped CSVs and imported."""
