"""payments-api: async payments backend for two-sided marketplaces on Stripe."""
