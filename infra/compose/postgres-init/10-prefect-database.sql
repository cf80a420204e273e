-- Run by the postgres image once, on an empty data directory. MLflow uses the database named by
-- POSTGRES_DB (mlflow); the Prefect server gets its own, and creates its tables itself.
CREATE DATABASE prefect;
