"""Run-time diagnosis: ECS and Auto Scaling failures classified, recorded once, alerted once."""
