"""The transport-neutral API: the route table every transport dispatches into."""
