"""One blueprint per surface: the MercadoPago endpoint and the JSON API."""
