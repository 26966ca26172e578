"""Harness code for tests and soak runs only, never used by a service: a local S3 (moto) server and a TCP proxy that injects faults."""
