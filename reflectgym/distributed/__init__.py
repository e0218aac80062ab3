"""reflectgym.distributed"""
