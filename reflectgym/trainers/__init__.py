"""reflectgym.trainers"""
