"""The report: tables beside the paper's, figures, and experiments compared (Table 8)."""
