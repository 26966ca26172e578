"""Generated gRPC stubs of proto/ganworks/v1 (run `make proto` to regenerate; never edit by hand)."""
