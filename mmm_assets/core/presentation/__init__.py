"""What people read: the plots, the HTML report and number formatting.
"""
