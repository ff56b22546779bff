"""What the gateway tells the operator: health and status now; metrics, logs and reports to come."""
