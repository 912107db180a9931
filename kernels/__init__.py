"""Fused attention kernels, each beside its plain-torch reference."""
