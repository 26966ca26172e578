"""The evaluator service: feature extractors, metrics, reference statistics, evaluation jobs and their gRPC server."""
