"""pgsched over HTTP: the codec (serializers), the WSGI server and the client."""
