# Builds both images from deploy/docker/Dockerfile: `docker buildx bake -f deploy/docker/docker-bake.hcl`.
variable "REGISTRY" { default = "ghcr.io/ganworks" }
variable "VERSION" { default = "0.1.0" }
variable "TORCH_SPEC" { default = "torch==2.13.0" }

group "default" { targets = ["cpu", "cuda"] }

target "cpu" {
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  args       = { TORCH_SPEC = TORCH_SPEC, TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu" }
  tags       = ["${REGISTRY}/ganworks:${VERSION}"]
}

target "cuda" {
  inherits = ["cpu"]
  args     = { TORCH_SPEC = TORCH_SPEC, TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu128" }
  tags     = ["${REGISTRY}/ganworks:${VERSION}-cuda"]
}
