"""iagan: Image-Adaptive GAN reconstruction (Abu Hussein, Tirer, Giryes, AAAI 2020) as a DVC pipeline."""
