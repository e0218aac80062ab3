"""reflectgym.sandboxes"""
