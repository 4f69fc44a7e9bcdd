-- Run once by the postgres image on a new volume: MLflow's store next to Prefect's.
CREATE DATABASE mlflow OWNER adaptflow;
