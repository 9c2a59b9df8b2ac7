{#
  Render a row template such as 'Question: {question}\n\nAnswer: {answer}' as a SQL expression that
  concatenates the literal text and the named columns (NULL columns render as empty text).
#}
{% macro render_template(template) -%}
  {%- set parts = modules.re.split('\\{([A-Za-z_][A-Za-z0-9_]*)\\}', template) -%}
  {%- set pieces = [] -%}
  {%- for part in parts -%}
    {%- if loop.index is even -%}
      {%- do pieces.append("coalesce(cast(" ~ adapter.quote(part) ~ " as varchar), '')") -%}
    {%- elif part != '' -%}
      {%- do pieces.append("'" ~ part.replace("'", "''").replace('\\n', "' || chr(10) || '") ~ "'") -%}
    {%- endif -%}
  {%- endfor -%}
  {{ pieces | join(' || ') if pieces else "''" }}
{%- endmacro %}
