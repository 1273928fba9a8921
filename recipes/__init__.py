"""Built-in recipes, installed as `nlptransfer.recipes`: one file each, a `Config` and `run(cfg)`."""
