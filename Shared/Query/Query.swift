/// Query building blocks for the query API (filters, paging, history). See the query-API issue.
public enum Query {}
