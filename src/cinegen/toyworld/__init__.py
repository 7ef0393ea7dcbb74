"""The toy world: a procedural renderer of captioned clips (world.py), the data source that serves them to training
(source.py) and the plug-in loss terms only a world that knows where its objects are can feed (losses.py, with
the shape reader of shapes.py). Training reaches it through data.sources' registry, never by import."""
