"""The generator service: serves published GAN snapshots over a batching gRPC API."""
