"""HTTP clients of the ad platforms (real APIs, base URL configurable per destination)."""
