"""Code that talks to the outside world: DNS, TLS/HTTPS probes, Git (nm-kube-config), telemetry."""
