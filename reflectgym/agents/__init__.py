"""reflectgym.agents"""
