"""The `portal-domains` pulumi-policy pack: rules, their configuration and fixtures.

`pulumi preview --policy-pack policies [--policy-pack-config policies/config/<env>.json]`
runs `policies/__main__.py`; see policies/README.md for the rules.
"""
