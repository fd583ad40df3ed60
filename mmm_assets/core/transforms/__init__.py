"""The media transforms (adstock and saturation families from PyMC-Marketing) and their evaluation on arrays: below
the model and the generator, which both use them."""
