"""The admin API: a separate listener for routes and contracts, guarded by a bearer token."""
