"""The paper's printed numbers and its tables, recounted with our cost model."""
