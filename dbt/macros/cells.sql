{#-
  Cells of sufficient statistics, rebuilt only where the fact changed (docs/INCREMENTAL.md,
  "Marts").

  A cell model keeps, in every row, the fingerprint of the fact's rows it was computed from
  (int_session_day_fingerprints: a day's is the XOR of its rows' hashes, a period's the XOR of its
  days', or of every day up to its end for a cell that depends on earlier days too) and the
  checksum of its own SQL file. An incremental build recomputes the days or periods
  whose fingerprint differs, or whose rows were computed by another version of the model, with
  dbt's own delete+insert strategy, and its post-hook removes the cells of days that have no
  session any more. Nothing is recorded outside the model: the fact can change in any run (or by
  hand), the next build of the cells finds it.
-#}

{#- The first day of the period of ``grain`` ('day', 'week', 'month') that holds ``day``:
    the fact's own session_date, session_week (ISO, Monday) and session_month. -#}
{% macro period_start_of(grain, day) -%}
    {%- if grain == 'day' -%}{{ day }}
    {%- elif grain in ('week', 'month') -%}date_trunc('{{ grain }}', {{ day }})::date
    {%- else -%}{{ exceptions.raise_compiler_error("unknown period grain " ~ grain) }}
    {%- endif -%}
{%- endmacro %}

{#- The checksum of the calling model's SQL file (dbt computes it when it parses the project). -#}
{% macro definition_checksum() -%}
    '{{ model.checksum.checksum }}'::text
{%- endmacro %}

{#- The session days a day-grain cell model must compute: every day on a full build; on an
    incremental one, the days whose fingerprint or model checksum differs from those the model's
    rows carry (a new day has no row). Columns: session_date, fingerprint. -#}
{% macro changed_days() -%}
    select d.session_date, d.fingerprint
    from {{ ref('int_session_day_fingerprints') }} d
    {%- if is_incremental() %}
    where not exists (
        select from {{ this }} c
        where c.session_date = d.session_date
          and c.source_fingerprint = d.fingerprint
          and c.definition_checksum = {{ definition_checksum() }}
    )
    {%- endif %}
{%- endmacro %}

{#- The periods of ``grains`` that hold sessions, each with its fingerprint: the XOR of its
    days', or with ``through_end`` of every day up to its end, for a cell that also depends on
    the days before the period (a user's first day). Columns: period_grain, period_start,
    fingerprint. -#}
{% macro period_fingerprints(grains, through_end=false) -%}
    select p.period_grain, p.period_start,
        {%- if through_end %}
           (array_agg(d.through order by d.session_date desc))[1] as fingerprint
        {%- else %}
           bit_xor(d.fingerprint) as fingerprint
        {%- endif %}
    from (
        select session_date, fingerprint, bit_xor(fingerprint) over (order by session_date) as through
        from {{ ref('int_session_day_fingerprints') }}
    ) d
    cross join lateral (values
        {%- for g in grains %}
        ('{{ g }}'::text, {{ period_start_of(g, 'd.session_date') }}){{ ',' if not loop.last }}
        {%- endfor %}
    ) as p (period_grain, period_start)
    group by p.period_grain, p.period_start
{%- endmacro %}

{#- The periods a period-grain cell model must compute, as changed_days does for days.
    Columns: period_grain, period_start, fingerprint. -#}
{% macro changed_periods(grains, through_end=false) -%}
    select p.*
    from ({{ period_fingerprints(grains, through_end) }}) p
    {%- if is_incremental() %}
    where not exists (
        select from {{ this }} c
        where c.period_grain = p.period_grain and c.period_start = p.period_start
          and c.source_fingerprint = p.fingerprint
          and c.definition_checksum = {{ definition_checksum() }}
    )
    {%- endif %}
{%- endmacro %}

{#- The days of the periods in ``periods`` (a relation or subquery with period_grain and
    period_start), for reading the fact's rows of those periods only. -#}
{% macro days_of_periods(periods) -%}
    select distinct d.session_date
    from {{ ref('int_session_day_fingerprints') }} d
    join ({{ periods }}) c
      on c.period_start = case c.period_grain
          when 'day' then d.session_date
          when 'week' then date_trunc('week', d.session_date)::date
          when 'month' then date_trunc('month', d.session_date)::date end
{%- endmacro %}

{#- Post-hook of a cell model: remove the cells whose day (``day_column``) or period no longer
    holds a session (every session of it left the fact). -#}
{% macro drop_vanished_cells(day_column=none, grains=none) -%}
    {%- if day_column -%}
    delete from {{ this }} c
    where not exists (select from {{ ref('int_session_day_fingerprints') }} d where d.session_date = c.{{ day_column }})
    {%- else -%}
    delete from {{ this }} c
    where not exists (select from ({{ period_fingerprints(grains) }}) p
                      where p.period_grain = c.period_grain and p.period_start = c.period_start)
    {%- endif -%}
{%- endmacro %}

{#- The transfer reasons fct_voice_kpis reports a share of (transfer_reason_share:<reason>);
    counted per day in int_session_day_cells. -#}
{% macro kpi_transfer_reasons() -%}
    {{- return(['repeated_errors', 'user_request', 'system', 'unspecified']) -}}
{%- endmacro %}
