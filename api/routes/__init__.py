"""One module per seed module; each exports `routes`."""
