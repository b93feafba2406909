"""The web page (``restoreagent serve``): a FastAPI app, a bounded job queue and one static page.

Needs the optional extra ``restoreagent[web]`` (fastapi, uvicorn); nothing else imports it.
"""
