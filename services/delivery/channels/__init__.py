"""The delivery channels, one module each; services.delivery.registry lists them."""
