"""The run store: tidy Parquet tables + manifest.json. Readers need only pandas and pyarrow."""
