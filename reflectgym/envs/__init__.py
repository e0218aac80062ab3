"""reflectgym.envs"""
