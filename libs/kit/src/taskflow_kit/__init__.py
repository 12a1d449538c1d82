"""TaskFlow's service kit: the cross-cutting pieces every service is built from.

The kit takes parameters and never reads a service's settings or imports a service.
"""
